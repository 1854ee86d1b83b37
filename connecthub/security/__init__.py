"""Encryption of job secrets: the one place ConnectHub encrypts and decrypts."""

from connecthub.security.fernet import (
    DecryptionError,
    KeyUnusableError,
    decrypt_json,
    encrypt_json,
)

__all__ = ["DecryptionError", "KeyUnusableError", "decrypt_json", "encrypt_json"]
