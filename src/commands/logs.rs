//! `borg logs`: placeholder until the renderer lands.
