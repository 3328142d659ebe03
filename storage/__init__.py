"""Everything that talks to Redis: key names, Lua scripts, stores and domain errors."""
