//! `borg status`: placeholder until the status view lands.
