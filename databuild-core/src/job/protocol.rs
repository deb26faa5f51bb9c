//! Job protocol decoding (stub; being written).
