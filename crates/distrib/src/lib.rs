//! plexgate-distrib (placeholder, being written)
