use crate::layout::Layout;
use alloc::vec;
use alloc::vec::Vec;

/// Iterator that yields linear indices for strided tensor access.
///
/// Handles non-contiguous tensors (including those with negative strides from flip)
/// by computing the correct storage index for each logical element position.
pub struct StridedIter<'a> {
    /// Current storage index (signed to handle negative strides)
    storage_index: isize,
    multi_index: Vec<usize>,
    layout: &'a Layout,
    remaining: usize,
}

impl<'a> StridedIter<'a> {
    /// Create a new strided iterator for the given layout.
    pub fn new(layout: &'a Layout) -> Self {
        let ndims = layout.num_dims();
        Self {
            storage_index: layout.start_offset() as isize,
            multi_index: vec![0; ndims],
            layout,
            remaining: layout.num_elements(),
        }
    }
}

impl Iterator for StridedIter<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }

        debug_assert!(
            self.storage_index >= 0,
            "StridedIter: negative storage index"
        );
        let idx = self.storage_index as usize;
        self.remaining -= 1;

        // Advance multi-index (last dimension first, like odometer)
        let shape = self.layout.shape();
        let strides = self.layout.strides();

        for d in (0..shape.num_dims()).rev() {
            self.multi_index[d] += 1;
            if self.multi_index[d] < shape[d] {
                self.storage_index += strides[d];
                break;
            }
            // Wrap around this dimension
            self.multi_index[d] = 0;
            self.storage_index -= (shape[d] as isize - 1) * strides[d];
        }

        Some(idx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for StridedIter<'_> {}

/// Visits two layouts of the same shape one innermost row at a time, in logical (row-major)
/// order: `row(a_start, a_stride, b_start, b_stride, len)` in storage offsets (xtal patch).
/// `StridedIter` advances its odometer for every element; by rows the inner loop is plain
/// arithmetic (element-wise ops over permuted tensors spent most of their time in `next`).
pub fn for_each_row_pair(
    a: &Layout,
    b: &Layout,
    mut row: impl FnMut(isize, isize, isize, isize, usize),
) {
    let shape = a.shape();
    debug_assert_eq!(shape, b.shape(), "for_each_row_pair: shapes differ");
    if a.num_elements() == 0 {
        return;
    }
    let dims = shape.num_dims();
    let (mut pa, mut pb) = (a.start_offset() as isize, b.start_offset() as isize);
    if dims == 0 {
        row(pa, 0, pb, 0, 1);
        return;
    }
    let (sa, sb) = (a.strides(), b.strides());
    let outer_dims: Vec<usize> = (0..dims - 1).map(|d| shape[d]).collect();
    let rows: usize = outer_dims.iter().product();
    let mut index = vec![0usize; dims - 1];
    for _ in 0..rows {
        row(pa, sa[dims - 1], pb, sb[dims - 1], shape[dims - 1]);
        for d in (0..dims - 1).rev() {
            index[d] += 1;
            if index[d] < outer_dims[d] {
                pa += sa[d];
                pb += sb[d];
                break;
            }
            index[d] = 0;
            pa -= (outer_dims[d] as isize - 1) * sa[d];
            pb -= (outer_dims[d] as isize - 1) * sb[d];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_std::Shape;

    #[test]
    fn test_contiguous_iteration() {
        let layout = Layout::contiguous(Shape::from(vec![2, 3]));
        let indices: Vec<_> = StridedIter::new(&layout).collect();
        assert_eq!(indices, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn test_transposed_iteration() {
        // Original: [[0, 1, 2], [3, 4, 5]] (shape [2, 3], strides [3, 1])
        // Transposed: [[0, 3], [1, 4], [2, 5]] (shape [3, 2], strides [1, 3])
        let layout = Layout::contiguous(Shape::from(vec![2, 3])).transpose(0, 1);
        let indices: Vec<_> = StridedIter::new(&layout).collect();
        assert_eq!(indices, vec![0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn test_narrowed_iteration() {
        // Original: [[0, 1, 2, 3], [4, 5, 6, 7]] (shape [2, 4])
        // Narrowed dim=1, start=1, len=2: [[1, 2], [5, 6]]
        let layout = Layout::contiguous(Shape::from(vec![2, 4])).narrow(1, 1, 2);
        let indices: Vec<_> = StridedIter::new(&layout).collect();
        assert_eq!(indices, vec![1, 2, 5, 6]);
    }

    /// Storage offsets visited by `for_each_row_pair`, for `a` and for `b`.
    fn rows_of(a: &Layout, b: &Layout) -> (Vec<usize>, Vec<usize>) {
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for_each_row_pair(a, b, |pa, sa, pb, sb, len| {
            for j in 0..len as isize {
                xs.push((pa + j * sa) as usize);
                ys.push((pb + j * sb) as usize);
            }
        });
        (xs, ys)
    }

    #[test]
    fn rows_visit_what_strided_iter_visits() {
        let base = Layout::contiguous(Shape::from(vec![2, 3, 4, 5]));
        let layouts = [
            base.clone(),
            base.permute(&[2, 0, 3, 1]),
            base.flip(&[1, 3]),
            base.narrow(2, 1, 2).permute(&[0, 2, 1, 3]),
            Layout::new(Shape::from(vec![3, 4]), vec![0, 1], 2),
            Layout::contiguous(Shape::from(vec![7])),
        ];
        for a in &layouts {
            let b = Layout::contiguous(a.shape().clone());
            let (xs, ys) = rows_of(a, &b);
            assert_eq!(xs, StridedIter::new(a).collect::<Vec<_>>(), "{a:?}");
            assert_eq!(ys, StridedIter::new(&b).collect::<Vec<_>>());
        }
        let scalar = Layout::new(Shape::from(Vec::<usize>::new()), vec![], 3);
        assert_eq!(rows_of(&scalar, &scalar), (vec![3], vec![3]));
        let empty = Layout::contiguous(Shape::from(vec![2, 0, 3]));
        assert_eq!(rows_of(&empty, &empty), (vec![], vec![]));
    }
}
