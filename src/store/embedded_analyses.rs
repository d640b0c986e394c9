//! `AnalysisStore` for the embedded store (being written).
