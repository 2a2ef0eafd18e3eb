//! The custom resource kinds of `iamwright.dev/v1alpha1` and the types they share.
//! Types only: the logic that acts on them lives in `controllers/`.

// kube's derive takes one `printcolumn(...)`/`category` attribute per entry, which this
// lint mistakes for duplicates.
#![allow(clippy::duplicated_attributes)]

mod access_key;
mod binding;
mod common;
mod group;
mod policy;
mod role;
pub mod schema;
mod scope;

pub use access_key::*;
pub use binding::*;
pub use common::*;
pub use group::*;
pub use policy::*;
pub use role::*;
pub use scope::*;

/// The API group of every kind.
pub const GROUP: &str = "iamwright.dev";
