//! The crystal graphs `xtal prepare` writes (`graph_*.npy`: atoms and edges of every graph
//! concatenated, with per-graph offsets), read in place: a batch decodes the graphs it needs
//! from the mapped arrays, so the graphs of 129k structures (gigabytes) are never all in
//! memory. Every array is checked when it is opened — shapes, offsets, edge endpoints, finite
//! geometry — so a damaged file is an error naming it, never a crash in a batch.

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use xtal_core::data::GraphRows;
use xtal_core::featurize::CrystalGraph;

use super::mapped::{MappedArray, RELEASE_EVERY};
use crate::exit::BadInput;

/// One dataset part's graph arrays.
#[derive(Debug)]
struct GraphArrays {
    atomic_numbers: MappedArray<u8>,
    /// `[graphs + 1]`: graph k's atoms are `node_offsets[k]..node_offsets[k + 1]`.
    node_offsets: MappedArray<i64>,
    /// `[edges, 2]`: (centre, neighbour), atom indices within the graph.
    edges: MappedArray<u32>,
    images: MappedArray<i32>,
    distances: MappedArray<f32>,
    vectors: MappedArray<f32>,
    edge_offsets: MappedArray<i64>,
    graphs: usize,
}

/// The file of one graph array of the part in `dir`.
pub fn graph_file(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join(format!("graph_{name}.npy"))
}

impl GraphArrays {
    fn open(dir: &Path) -> anyhow::Result<Self> {
        let file = |name: &str| graph_file(dir, name);
        let (atomic_numbers, nodes) = MappedArray::<u8>::open(&file("atomic_numbers"), &[])?;
        let (node_offsets, node_graphs) = MappedArray::<i64>::open(&file("node_offsets"), &[])?;
        let (edges, edge_count) = MappedArray::<u32>::open(&file("edges"), &[2])?;
        let (edge_offsets, edge_graphs) = MappedArray::<i64>::open(&file("edge_offsets"), &[])?;
        let (images, image_count) = MappedArray::<i32>::open(&file("images"), &[3])?;
        let (distances, distance_count) = MappedArray::<f32>::open(&file("distances"), &[])?;
        let (vectors, vector_count) = MappedArray::<f32>::open(&file("vectors"), &[3])?;
        for (name, len) in [
            ("images", image_count),
            ("distances", distance_count),
            ("vectors", vector_count),
        ] {
            if len != edge_count {
                return Err(BadInput(format!(
                    "{}: {len} edges, {} has {edge_count}",
                    file(name).display(),
                    file("edges").display()
                ))
                .into());
            }
        }
        check_offsets(&file("node_offsets"), node_offsets.values(), nodes)?;
        check_offsets(&file("edge_offsets"), edge_offsets.values(), edge_count)?;
        if node_graphs != edge_graphs {
            return Err(BadInput(format!(
                "{}: offsets of {} graphs, {} of {}",
                file("edge_offsets").display(),
                edge_graphs.saturating_sub(1),
                file("node_offsets").display(),
                node_graphs.saturating_sub(1)
            ))
            .into());
        }
        let arrays = Self {
            atomic_numbers,
            node_offsets,
            edges,
            images,
            distances,
            vectors,
            edge_offsets,
            graphs: node_graphs - 1,
        };
        arrays.check_edges(dir)?;
        arrays.release();
        Ok(arrays)
    }

    /// Every edge joins two atoms of its own graph and has a finite geometry.
    fn check_edges(&self, dir: &Path) -> anyhow::Result<()> {
        let (nodes, edges) = (self.node_offsets.values(), self.edge_offsets.values());
        let pairs = self.edges.values();
        for k in 0..self.graphs {
            let atoms = (nodes[k + 1] - nodes[k]) as u32;
            if atoms == 0 {
                return Err(BadInput(format!(
                    "{}: graph {k} has no atoms",
                    graph_file(dir, "node_offsets").display()
                ))
                .into());
            }
            let mut range = edges[k] as usize..edges[k + 1] as usize;
            if let Some(e) = range.find(|&e| pairs[2 * e].max(pairs[2 * e + 1]) >= atoms) {
                return Err(BadInput(format!(
                    "{}: edge {e} joins atoms ({}, {}) of graph {k}, which has {atoms}",
                    graph_file(dir, "edges").display(),
                    pairs[2 * e],
                    pairs[2 * e + 1]
                ))
                .into());
            }
        }
        for (name, values) in [
            ("distances", self.distances.values()),
            ("vectors", self.vectors.values()),
        ] {
            if let Some(at) = values.iter().position(|x| !x.is_finite()) {
                return Err(BadInput(format!(
                    "{}: value {at} is {} (NaN or infinite)",
                    graph_file(dir, name).display(),
                    values[at]
                ))
                .into());
            }
        }
        Ok(())
    }

    /// Graph `k`'s atomic numbers.
    fn atoms(&self, k: usize) -> &[u8] {
        let o = self.node_offsets.values();
        &self.atomic_numbers.values()[o[k] as usize..o[k + 1] as usize]
    }

    fn graph(&self, k: usize) -> CrystalGraph {
        let o = self.edge_offsets.values();
        let (start, end) = (o[k] as usize, o[k + 1] as usize);
        let pairs = &self.edges.values()[2 * start..2 * end];
        CrystalGraph {
            atomic_numbers: self.atoms(k).to_vec(),
            sources: pairs.iter().step_by(2).copied().collect(),
            targets: pairs.iter().skip(1).step_by(2).copied().collect(),
            images: triples(&self.images.values()[3 * start..3 * end]),
            distances: self.distances.values()[start..end].to_vec(),
            vectors: triples(&self.vectors.values()[3 * start..3 * end]),
        }
    }

    /// Bytes graph `k` occupies in the maps.
    fn bytes(&self, k: usize) -> usize {
        let (n, e) = (self.node_offsets.values(), self.edge_offsets.values());
        (n[k + 1] - n[k]) as usize + (e[k + 1] - e[k]) as usize * (8 + 12 + 4 + 12)
    }

    fn release(&self) {
        self.atomic_numbers.release();
        self.node_offsets.release();
        self.edges.release();
        self.images.release();
        self.distances.release();
        self.vectors.release();
        self.edge_offsets.release();
    }
}

fn triples<T: Copy>(values: &[T]) -> Vec<[T; 3]> {
    values.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect()
}

/// Offsets start at 0, never decrease and end at the array's length.
fn check_offsets(path: &Path, offsets: &[i64], len: usize) -> anyhow::Result<()> {
    let bad = |m: String| BadInput(format!("{}: {m}", path.display()));
    match (offsets.first(), offsets.last()) {
        (Some(0), Some(&last)) if last as usize == len && last >= 0 => {}
        _ => {
            return Err(bad(format!(
                "offsets must run from 0 to {len} (the array they index)"
            ))
            .into());
        }
    }
    if let Some(k) = offsets.windows(2).position(|w| w[1] < w[0]) {
        return Err(bad(format!("offset {} is less than offset {k}", k + 1)).into());
    }
    Ok(())
}

/// The graphs of every part of a dataset, graph k of the whole being the part's graph less
/// the graphs of the parts before it.
#[derive(Debug)]
pub struct MappedGraphs {
    parts: Vec<GraphArrays>,
    /// Per part: the first graph of the whole it holds.
    starts: Vec<usize>,
    /// Bytes of graphs read so far (pages are handed back every [`RELEASE_EVERY`]).
    read: AtomicUsize,
}

impl MappedGraphs {
    /// The graph arrays of the parts in `dirs`, in order; `offsets[i]` is where part i's
    /// graphs start in the whole (the dataset's records count that way).
    pub fn open(dirs: &[(&Path, usize)]) -> anyhow::Result<Self> {
        let mut out = Self {
            parts: Vec::new(),
            starts: Vec::new(),
            read: AtomicUsize::new(0),
        };
        for &(dir, start) in dirs {
            let arrays = GraphArrays::open(dir)?;
            if start != out.len() {
                return Err(BadInput(format!(
                    "{}: the parts before it hold {} graphs, the dataset's records count {start}",
                    graph_file(dir, "node_offsets").display(),
                    out.len()
                ))
                .into());
            }
            out.starts.push(start);
            out.parts.push(arrays);
        }
        Ok(out)
    }

    /// (part, graph within it) of graph `k` of the whole.
    fn locate(&self, k: usize) -> (&GraphArrays, usize) {
        let p = self.starts.partition_point(|&s| s <= k) - 1;
        (&self.parts[p], k - self.starts[p])
    }

    /// Graph `k`'s atomic numbers (`k` < `len`).
    pub fn atoms(&self, k: usize) -> &[u8] {
        let (part, k) = self.locate(k);
        part.atoms(k)
    }
}

impl GraphRows for MappedGraphs {
    fn graph(&self, k: usize) -> Cow<'_, CrystalGraph> {
        let (part, k) = self.locate(k);
        let bytes = part.bytes(k);
        let before = self.read.fetch_add(bytes, Ordering::Relaxed);
        if (before + bytes) / RELEASE_EVERY != before / RELEASE_EVERY {
            self.parts.iter().for_each(GraphArrays::release);
        }
        Cow::Owned(part.graph(k))
    }

    fn len(&self) -> usize {
        self.starts
            .last()
            .map_or(0, |s| s + self.parts.last().map_or(0, |p| p.graphs))
    }
}
