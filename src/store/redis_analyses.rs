//! `AnalysisStore` for the Redis store (being written).
