//! DIVE's orchestrator.
//!
//! A stack file (compose format) becomes a [`spec::StackSpec`], then a plan (dependency graph,
//! levels, critical path); the scheduler starts each service the moment its dependencies satisfy
//! their conditions, through a per-stack supervisor daemon that keeps the processes running after
//! the CLI exits. Every deployment is recorded in the state store and reported.

pub mod deploy;
pub mod fmt;
pub mod logs;
pub mod metrics;
pub mod paths;
pub mod plan;
pub mod probe;
pub mod process;
pub mod report;
pub mod retry;
pub mod scheduler;
pub mod spec;
pub mod state;
pub mod supervisor;
