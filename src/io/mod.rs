//! The thin I/O layer: sockets and the TUN device. Nothing here knows a protocol;
//! the protocol crates never touch a socket.

pub mod link;
pub mod net;
pub mod packet;
pub mod sockdiag;
pub mod tun;
