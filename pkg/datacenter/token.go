package datacenter

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// TokenFile is a bearer token read from a file and re-read when the file
// changes, so a rotated Secret takes effect without a restart. The token is
// never logged or put in an error.
type TokenFile struct {
	path string

	mu      sync.Mutex
	token   string
	modTime time.Time
	size    int64
}

// NewTokenFile reads tokens from path.
func NewTokenFile(path string) *TokenFile { return &TokenFile{path: path} }

// Get returns the current token.
func (t *TokenFile) Get() (string, error) {
	st, err := os.Stat(t.path)
	if err != nil {
		return "", fmt.Errorf("datacenter token file: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && st.ModTime().Equal(t.modTime) && st.Size() == t.size {
		return t.token, nil
	}
	data, err := os.ReadFile(t.path)
	if err != nil {
		return "", fmt.Errorf("datacenter token file: %w", err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("datacenter token file %s is empty", t.path)
	}
	t.token, t.modTime, t.size = token, st.ModTime(), st.Size()
	return token, nil
}
