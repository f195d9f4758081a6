mod affine_quotient;
mod finite_group;
mod klassengleiche_subgroup;
mod translationengleiche_subgroup;

pub use klassengleiche_subgroup::{
    KlassengleicheSubgroup, KlassengleicheSubgroupConjugacyClass, KlassengleicheSubgroupConjugate,
    enumerate_klassengleiche_subgroups, enumerate_klassengleiche_subgroups_by_index,
};
pub use translationengleiche_subgroup::{
    TranslationengleicheSubgroup, TranslationengleicheSubgroupConjugacyClass,
    TranslationengleicheSubgroupConjugate, enumerate_translationengleiche_subgroups,
};
