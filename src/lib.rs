//! iamwright: a Kubernetes operator that manages AWS IAM from custom resources.

pub mod api;
pub mod aws;
pub mod config;
pub mod controllers;
pub mod crds;
pub mod leader;
pub mod operator;
pub mod policy;
pub mod reason;
pub mod reference;
pub mod status;
pub mod telemetry;
pub mod trust;
pub mod validate;
