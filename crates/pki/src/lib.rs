//! plexgate-pki (placeholder, being written)
