//! DIVE's orchestrator.
//!
//! A stack file (compose format) becomes a [`spec::StackSpec`], then a plan (dependency graph,
//! levels, critical path); the scheduler starts each service the moment its dependencies satisfy
//! their conditions, through a per-stack supervisor daemon that keeps the processes running after
//! the CLI exits. Every deployment is recorded in the state store and reported.

pub mod fmt;
pub mod logs;
pub mod paths;
pub mod probe;
pub mod process;
pub mod retry;
pub mod scheduler;
pub mod plan;
pub mod spec;
pub mod supervisor;
pub mod metrics;
pub mod report;
pub mod state;
