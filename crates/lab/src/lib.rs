//! plexgate-lab (placeholder, being written)
