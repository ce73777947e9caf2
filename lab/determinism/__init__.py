"""Temperature-zero nondeterminism: compare generations, find where and how they diverge."""
