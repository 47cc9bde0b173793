package layer

// SetTwoPass switches c to the design that always hashes first and
// compresses a second stream on a miss, for tests and benchmarks.
func (c *Cache) SetTwoPass(on bool) { c.twoPass = on }

// EntriesDir and HintsDir are where c keeps its files.
func (c *Cache) EntriesDir() string { return c.entries() }
func (c *Cache) HintsDir() string   { return c.hints() }
