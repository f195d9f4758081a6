//! Model families, one file each: [`clip`] (structure–text CLIP).

pub mod clip;
