//! End-to-end tests against the test bed: a real kube-apiserver (+ etcd and the
//! garbage collector) and moto for AWS. Run them with `hack/test.sh`.

mod access_key;
mod accounts;
mod binding;
mod catalog;
mod chart;
mod console;
mod crds;
mod document_from;
mod eks;
mod faults;
mod gitops;
mod grammar;
mod group;
mod ha;
mod harness;
mod observe;
mod policy;
mod rbac;
mod role;
mod sharding;
mod trust;
mod validate;
