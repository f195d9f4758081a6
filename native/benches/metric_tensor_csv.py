"""Copy a materials CSV adding a `tensor` column: each structure's lattice metric tensor
G = A Aᵀ (Å², row-major 3×3) computed by pymatgen, a real per-structure tensor for trying
`xtal train tensor` on data that carries no measured property tensors.
Run: python3 native/benches/metric_tensor_csv.py data/sample/materials.csv OUT.csv"""
import csv
import json
import sys
import warnings

from pymatgen.core import Structure

warnings.filterwarnings("ignore")  # pymatgen notes every rounded coordinate
csv.field_size_limit(sys.maxsize)
src, dst = sys.argv[1], sys.argv[2]
with open(src, newline="") as f, open(dst, "w", newline="") as g:
    reader = csv.DictReader(f)
    writer = csv.DictWriter(g, fieldnames=reader.fieldnames + ["tensor"])
    writer.writeheader()
    for row in reader:
        try:
            lattice = Structure.from_str(row["cif"], fmt="cif").lattice
            row["tensor"] = json.dumps([round(x, 6) for x in lattice.metric_tensor.ravel()])
        except Exception:  # unreadable CIF: no tensor (xtal reports the structure itself)
            row["tensor"] = ""
        writer.writerow(row)
