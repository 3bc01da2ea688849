//! JSON APIs under `/api`: the researchers' differentially private query interface.

pub mod research;
