//! Example graphs for databuild; the runnable programs are the `[[example]]` targets.
