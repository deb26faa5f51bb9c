//! ProcessJob (stub; being written).
/// Process job.
#[derive(Debug)]
pub struct ProcessJob;
/// Builder.
#[derive(Debug)]
pub struct ProcessJobBuilder;
