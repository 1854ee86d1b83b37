"""Job plugins used only by the tests."""
