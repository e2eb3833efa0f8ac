//! DVIPA roles, takeover, takeback and planned moves (seed 001, DESIGN.md flows 6-7).
