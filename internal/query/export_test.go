package query

// SetTestHooks lets the external tests end an export's point in time after each page and learn
// that Page reopened it; the returned function removes the hooks.
func SetTestHooks(page func(pit string), reopened func()) (restore func()) {
	testHooks.page, testHooks.reopened = page, reopened
	return func() { testHooks.page, testHooks.reopened = nil, nil }
}
