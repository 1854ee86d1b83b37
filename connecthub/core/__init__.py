"""Configuration and logging shared by every ConnectHub process."""
