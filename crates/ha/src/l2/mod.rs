//! Ownership of addresses on the LAN (seeds 000, 002, 003, 004).
