//! DIVE's orchestrator.
//!
//! A stack file (compose format) becomes a [`spec::StackSpec`], then a plan (dependency graph,
//! levels, critical path); the scheduler starts each service the moment its dependencies satisfy
//! their conditions, through a per-stack supervisor daemon that keeps the processes running after
//! the CLI exits. Every deployment is recorded in the state store and reported.

pub mod spec;
pub mod state;
