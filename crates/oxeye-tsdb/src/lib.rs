//! The oxeye metrics store (in progress).
