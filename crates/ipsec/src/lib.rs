//! plexgate-ipsec (placeholder, being written)
