//! Healing: the pure policy ([`policy`]) and the actions that carry it out.

pub mod act;
pub mod policy;

#[cfg(test)]
mod policy_tests;
