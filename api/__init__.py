"""The HTTP layer: app factory, blueprints, guard, errors and settings."""
