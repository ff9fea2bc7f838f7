//! Unit tests of single-node DFSM behaviour, C rule by C rule.
