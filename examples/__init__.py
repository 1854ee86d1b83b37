"""Example jobs files; packaged so `connecthub up --with-example` finds them in any install."""
