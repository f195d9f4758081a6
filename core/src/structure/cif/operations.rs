//! The symmetry operations of a CIF block, from wherever the file gives them: listed triplets
//! (which win over any symbol), magnetic operations and centrings (MAGNDATA, ISOCIF; old and new
//! tag forms), a Hall symbol, a Hermann–Mauguin symbol, or a space-group number.

use super::CifError;
use super::build::Ctx;
use super::symop::SymOp;
use super::syntax::Value;
use super::values::parse_number;
use crate::structure::symmetry;

/// Operations to expand the asymmetric unit with; `time_reversal[k]` is +1 or -1 for operation
/// k (always +1 outside magnetic files), which flips a magnetic moment but does not move atoms.
pub(super) struct BlockOperations {
    pub ops: Vec<SymOp>,
    pub time_reversal: Vec<f64>,
    /// A symbol without its origin choice: `ops` are origin choice 2's, these choice 1's; the
    /// reader keeps whichever places the sites better.
    pub origin_choice_1: Option<Vec<SymOp>>,
}

/// Tags that list operations as triplets, in the order pymatgen looks for them.
const SYMOP_TAGS: [&str; 6] = [
    "_symmetry_equiv_pos_as_xyz",
    "_symmetry_equiv_pos_as_xyz_",
    "_space_group_symop_operation_xyz",
    "_space_group_symop_operation_xyz_",
    "_space_group_symop.operation_xyz",
    "_symmetry_equiv.pos_as_xyz",
];
const HALL_TAGS: [&str; 3] = [
    "_symmetry_space_group_name_hall",
    "_space_group_name_hall",
    "_space_group.name_hall",
];
const HM_TAGS: [&str; 5] = [
    "_symmetry_space_group_name_h-m",
    "_space_group_name_h-m_alt",
    "_space_group_name_h-m",
    "_space_group.name_h-m_alt",
    "_symmetry_space_group_name_h-m_alt",
];
const NUMBER_TAGS: [&str; 4] = [
    "_space_group_it_number",
    "_symmetry_int_tables_number",
    "_space_group.it_number",
    "_space_group_it_number_",
];

/// Translations are snapped to multiples of 1/24 (every translation of the 230 groups in any
/// ITA setting is one) when a file writes them as decimals within this of one: `0.66667+x`.
const TRANSLATION_SNAP: f64 = 1e-3;

pub(super) fn operations(ctx: &Ctx, rhombohedral_cell: bool) -> Result<BlockOperations, CifError> {
    if let Some(magnetic) = magnetic_operations(ctx)? {
        return Ok(magnetic);
    }
    let block = ctx.block;
    let present = |tags: &[&'static str]| -> Option<(&'static str, &Value)> {
        tags.iter()
            .find_map(|t| block.value(t).filter(|v| !v.is_missing()).map(|v| (*t, v)))
    };
    for tag in SYMOP_TAGS {
        let Some(values) = block.values(tag) else {
            continue;
        };
        let mut ops = Vec::with_capacity(values.len());
        for v in values.iter().filter(|v| !v.is_missing()) {
            let op = SymOp::parse(strip_id(&v.text))
                .map_err(|e| ctx.err(v.line, format!("{tag}: {e}")))?;
            ops.push(snap_translations(ctx, op, v.line));
        }
        if ops.is_empty() {
            continue;
        }
        // The listed operations win; a symbol that implies a different group is worth saying.
        let line = values[0].line;
        let implied = present(&HALL_TAGS)
            .and_then(|(_, v)| Some((v, symmetry::operations_of_hall_symbol(&v.text)?.len())))
            .or_else(|| {
                present(&HM_TAGS).and_then(|(_, v)| {
                    Some((
                        v,
                        symmetry::resolve_hm_symbol(&v.text, rhombohedral_cell)?
                            .operations
                            .len(),
                    ))
                })
            });
        if let Some((v, n)) = implied
            && n != ops.len()
        {
            ctx.warn(
                line,
                format!(
                    "the {} listed operations are used; the symbol '{}' (line {}) implies {n}",
                    ops.len(),
                    v.text,
                    v.line
                ),
            );
        }
        return Ok(BlockOperations::plain(ops));
    }
    if let Some((tag, v)) = present(&HALL_TAGS) {
        return symmetry::operations_of_hall_symbol(&v.text)
            .map(BlockOperations::plain)
            .ok_or_else(|| ctx.err(v.line, format!("{tag}: unknown Hall symbol '{}'", v.text)));
    }
    let number = present(&NUMBER_TAGS);
    if let Some((tag, v)) = present(&HM_TAGS) {
        if let Some(found) = symmetry::resolve_hm_symbol(&v.text, rhombohedral_cell) {
            for note in found.notes {
                ctx.warn(v.line, format!("{tag}: {note}"));
            }
            if let Some((ntag, nv)) = number
                && found.number != 0
                && parse_number(&nv.text) != Some(f64::from(found.number))
            {
                ctx.warn(
                    nv.line,
                    format!(
                        "{ntag} '{}' disagrees with {tag} '{}' (No. {}): the symbol is used",
                        nv.text, v.text, found.number
                    ),
                );
            }
            return Ok(BlockOperations {
                origin_choice_1: found.origin_choice_1,
                ..BlockOperations::plain(found.operations)
            });
        }
        // A symbol xtal cannot read may name a setting the number's standard one is not: the
        // number alone would give a wrong structure. An empty symbol says nothing.
        if !v.text.trim().is_empty() {
            return Err(ctx.err(
                v.line,
                format!(
                    "{tag}: unknown space-group symbol '{}', and the file lists no symmetry \
                     operations: only its asymmetric unit could be given, so it is refused",
                    v.text
                ),
            ));
        }
    }
    if let Some((tag, v)) = number {
        let n = parse_number(&v.text).filter(|n| n.fract() == 0.0 && (1.0..=230.0).contains(n));
        return n
            .and_then(|n| symmetry::operations_of_number(n as u16))
            .map(BlockOperations::plain)
            .ok_or_else(|| {
                ctx.err(
                    v.line,
                    format!("{tag}: '{}' is not a space-group number 1–230", v.text),
                )
            });
    }
    // No symmetry given at all: the sites are the whole cell (P1), as pymatgen assumes.
    Ok(BlockOperations::plain(vec![SymOp::IDENTITY]))
}

impl BlockOperations {
    fn plain(ops: Vec<SymOp>) -> Self {
        let time_reversal = vec![1.0; ops.len()];
        Self {
            ops,
            time_reversal,
            origin_choice_1: None,
        }
    }
}

/// Some writers put the operation's id in the same value: "1 x,y,z".
fn strip_id(text: &str) -> &str {
    let text = text.trim();
    match text.split_once(char::is_whitespace) {
        Some((id, rest)) if id.chars().all(|c| c.is_ascii_digit()) => rest.trim(),
        _ => text,
    }
}

fn snap_translations(ctx: &Ctx, mut op: SymOp, line: usize) -> SymOp {
    let mut snapped = false;
    for t in &mut op.translation {
        let k = (*t * 24.0).round();
        let d = (*t - k / 24.0).abs();
        if d > 1e-12 && d < TRANSLATION_SNAP {
            *t = k / 24.0;
            snapped = true;
        }
    }
    if snapped {
        ctx.warn(
            line,
            "decimal translation read as the nearest multiple of 1/24".into(),
        );
    }
    op
}

/// The tag of a magnetic operation or centring column, in any of the forms MAGNDATA and ISOCIF
/// have used (`_space_group_symop_magn_operation.xyz`, `_space_group_symop.magn_operation_xyz`,
/// `_space_group_symop_magn_centering.xyz`, …).
fn magnetic_tag(ctx: &Ctx, kind: &str) -> Option<String> {
    let is = |t: &str| t.contains(kind) && t.ends_with("xyz") && t.starts_with("_space_group");
    ctx.block
        .loops
        .iter()
        .flat_map(|l| l.tags.iter())
        .chain(ctx.block.items.iter().map(|(t, _)| t))
        .find(|t| is(t))
        .cloned()
}

/// Operations × centrings of a magnetic CIF, or `None` when the block is not magnetic.
fn magnetic_operations(ctx: &Ctx) -> Result<Option<BlockOperations>, CifError> {
    let Some(op_tag) = magnetic_tag(ctx, "magn_operation") else {
        return Ok(None);
    };
    let read = |tag: &str| -> Result<Vec<(SymOp, f64)>, CifError> {
        let values = ctx.block.values(tag).unwrap_or_default();
        values
            .iter()
            .filter(|v| !v.is_missing())
            .map(|v| {
                let (op, theta) = SymOp::parse_magnetic(strip_id(&v.text))
                    .map_err(|e| ctx.err(v.line, format!("{tag}: {e}")))?;
                Ok((snap_translations(ctx, op, v.line), theta))
            })
            .collect()
    };
    let operations = read(&op_tag)?;
    let centrings = match magnetic_tag(ctx, "magn_centering") {
        Some(tag) => read(&tag)?,
        None => Vec::new(),
    };
    if operations.is_empty() {
        return Ok(None);
    }
    let centrings = if centrings.is_empty() {
        vec![(SymOp::IDENTITY, 1.0)]
    } else {
        centrings
    };
    // Each centring (a translation with or without time reversal) after each operation.
    let mut ops = Vec::with_capacity(operations.len() * centrings.len());
    let mut time_reversal = Vec::with_capacity(ops.capacity());
    for (c, c_theta) in &centrings {
        for (op, theta) in &operations {
            ops.push(c.after(op));
            time_reversal.push(theta * c_theta);
        }
    }
    Ok(Some(BlockOperations {
        ops,
        time_reversal,
        origin_choice_1: None,
    }))
}
