"""Key custody over PKCS#11: one HSM thread per process, sessions, keys, MACs, the SoftHSM bootstrap."""
