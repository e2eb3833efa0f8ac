//! plexgate-ike (placeholder, being written)
