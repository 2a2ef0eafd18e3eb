//! iamwright: a Kubernetes operator that manages AWS IAM from custom resources.

pub mod api;
pub mod aws;
pub mod config;
pub mod controllers;
pub mod crds;
pub mod error;
pub mod inputs;
pub mod leader;
pub mod naming;
pub mod operator;
pub mod policy;
pub mod reason;
pub mod reference;
pub mod shutdown;
pub mod status;
pub mod telemetry;
pub mod trust;
pub mod validate;
