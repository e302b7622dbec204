package datacenter

import (
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// racyWindow is how long after a file's modification time its content may
// still change without the time changing: file systems keep modification times
// at a coarse granularity (a few milliseconds, up to 2s on some). A file
// modified this recently before it was read is read again at the next Get
// rather than trusted from the cache (git's "racily clean" rule).
const racyWindow = 2 * time.Second

// maxTokenBytes bounds what is read from a token file.
const maxTokenBytes = 64 << 10

// TokenFile is a bearer token read from a file. The file may be missing at
// first and appear later, be rewritten in place or be replaced (as a mounted
// Secret is, by renaming): each Get notices and reads it again, so a token
// added or rotated takes effect without a restart. The token is never logged
// or put in an error.
type TokenFile struct {
	path string

	mu     sync.Mutex
	token  string
	info   os.FileInfo // the file the token was read from, as it was then
	readAt time.Time
}

// NewTokenFile reads tokens from path. The file need not exist yet.
func NewTokenFile(path string) *TokenFile { return &TokenFile{path: path} }

// Get returns the current token. When the file is missing, unreadable or
// empty it returns a *CredentialsError with Missing set.
func (t *TokenFile) Get() (string, error) {
	st, err := os.Stat(t.path)
	if err != nil {
		return "", t.missing(err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cached(st) {
		return t.token, nil
	}
	readAt := time.Now()
	token, info, err := readToken(t.path)
	if err != nil {
		t.token, t.info = "", nil
		return "", &CredentialsError{File: t.path, Missing: true, Err: err}
	}
	t.token, t.info, t.readAt = token, info, readAt
	return token, nil
}

// cached reports whether the token read before is still the file's content:
// the same file, unchanged, and not modified so close to the read that a
// later change could have kept its modification time. Called with t.mu held.
func (t *TokenFile) cached(st os.FileInfo) bool {
	return t.token != "" && os.SameFile(st, t.info) && st.ModTime().Equal(t.info.ModTime()) &&
		st.Size() == t.info.Size() && t.info.ModTime().Before(t.readAt.Add(-racyWindow))
}

func (t *TokenFile) missing(err error) error {
	t.mu.Lock()
	t.token, t.info = "", nil
	t.mu.Unlock()
	return &CredentialsError{File: t.path, Missing: true, Err: err}
}

// readToken reads the token and describes the very file it read.
func readToken(path string) (string, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxTokenBytes))
	if err != nil {
		return "", nil, err
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", nil, errEmptyCredentials
	}
	return token, info, nil
}
