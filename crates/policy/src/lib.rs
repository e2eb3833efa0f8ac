//! plexgate-policy (placeholder, being written)
