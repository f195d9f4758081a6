"""The Python path xtal's `bench prepare` is measured against: pymatgen reads each CIF,
then FTCP is computed as the original FTCP_represent does (written from its description in
../shared/reference/ftcp.md) and a CGCNN-style neighbour list (pymatgen get_all_neighbors, 8 Å).

Usage: python3 python_baseline.py CSV N ATOM_INIT   → prints structures/s for each stage as JSON.
"""
import csv
import json
import sys
import time
import warnings

import numpy as np
from pymatgen.core import Structure

warnings.simplefilter("ignore")
csv.field_size_limit(10**9)


def ftcp(struct, atom_init, max_elms=4, max_sites=100):
    E = max(max_elms, 3)
    zs = [site.specie.Z for site in struct]
    elm = list(dict.fromkeys(zs))
    elm_mat = np.zeros((103, E))
    for j, z in enumerate(elm):
        elm_mat[z - 1, j] = 1
    latt = np.zeros((2, E))
    latt[0, :3] = struct.lattice.abc
    latt[1, :3] = struct.lattice.angles
    coords = np.zeros((max_sites, E))
    coords[: len(zs), :3] = struct.frac_coords
    occ = np.zeros((max_sites, E))
    for i, z in enumerate(zs):
        occ[i, elm.index(z)] = 1
    props = np.zeros((92, E))
    for j, z in enumerate(elm):
        props[:, j] = atom_init[str(z)]
    real = np.vstack([elm_mat, latt, coords, occ, np.zeros((1, E)), props])
    recip = struct.lattice.reciprocal_lattice_crystallographic
    pts = recip.get_points_in_sphere([[0, 0, 0]], [0, 0, 0], 1.297)
    if len(pts) < 60:
        pts = recip.get_points_in_sphere([[0, 0, 0]], [0, 0, 0], 1.4)
    hkl = np.array([p[0] for p in pts])
    dist = np.array([p[1] for p in pts])
    keep = dist > 0
    hkl, dist = hkl[keep], dist[keep]
    order = np.lexsort((-hkl[:, 2], -hkl[:, 1], -hkl[:, 0], np.abs(hkl).sum(axis=1)))[:59]
    hkl, dist = hkl[order], dist[order]
    k = np.zeros((real.shape[0], 59))
    k[105 + 2 * max_sites, :] = dist
    site_props = np.array([atom_init[str(z)] for z in zs]).T  # 92 × n
    phase = np.pi * struct.frac_coords @ hkl.T  # n × 59
    k[-92:, :] = site_props @ phase
    out = np.hstack([real, k])
    return np.vstack([out, np.zeros((2, out.shape[1]))])


def main():
    path, n, atom_init_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    atom_init = json.load(open(atom_init_path))
    rows = []
    for r in csv.DictReader(open(path)):
        rows.append(r["cif"])
        if len(rows) == n:
            break
    t0 = time.perf_counter()
    structs = [Structure.from_str(c, fmt="cif") for c in rows]
    t1 = time.perf_counter()
    made = 0
    for s in structs:
        if len(s) <= 100 and len(s.composition) <= 4:
            ftcp(s, atom_init)
            made += 1
    t2 = time.perf_counter()
    for s in structs:
        s.get_all_neighbors(8.0)
    t3 = time.perf_counter()
    print(json.dumps({
        "structures": len(structs),
        "cif_per_s": len(structs) / (t1 - t0),
        "ftcp_per_s": made / (t2 - t1),
        "graph_per_s": len(structs) / (t3 - t2),
        "total_per_s": len(structs) / (t3 - t0),
    }))


if __name__ == "__main__":
    main()
