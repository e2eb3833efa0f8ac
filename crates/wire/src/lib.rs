//! plexgate-wire (placeholder, being written)
