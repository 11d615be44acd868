package store

// SetFindScanMax sets how many of a provider's lines one page of FindClaims
// looks at, for a test that must not run in parallel with others using it;
// it returns the restore.
func SetFindScanMax(n int) (restore func()) {
	old := findScanMax
	findScanMax = n
	return func() { findScanMax = old }
}
