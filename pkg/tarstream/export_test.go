package tarstream

// WithChunkSize exposes withChunkSize to the external tests.
var WithChunkSize = withChunkSize
