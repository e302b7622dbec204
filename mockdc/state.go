package mockdc

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"
)

// load reads the state file, if one is configured and exists.
func (s *Server) load() error {
	if s.opts.StateFile == "" {
		return nil
	}
	data, err := os.ReadFile(s.opts.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("state file %s: %w", s.opts.StateFile, err)
	}
	if st.Jobs != nil {
		s.st.Jobs = st.Jobs
	}
	if st.ByKey != nil {
		s.st.ByKey = st.ByKey
	}
	if st.Machines != nil {
		s.st.Machines = st.Machines
	}
	s.st.Ledger, s.st.NextID = st.Ledger, st.NextID
	return nil
}

// save writes the state file atomically (write, then rename), so a crash
// leaves either the old state or the new one. Called by unlock, with s.mu held.
func (s *Server) save() {
	if s.opts.StateFile == "" {
		return
	}
	data, err := json.Marshal(&s.st)
	if err == nil {
		tmp := s.opts.StateFile + ".tmp"
		if err = os.WriteFile(tmp, data, 0o600); err == nil {
			err = os.Rename(tmp, s.opts.StateFile)
		}
	}
	if err != nil {
		s.logger.Error(err, "Could not save state", "file", s.opts.StateFile)
	}
}

// LoadInventory reads a YAML (or JSON) list of machines.
func LoadInventory(path string) ([]InventoryMachine, error) {
	data, err := os.ReadFile(filepath.Clean(path))
	if err != nil {
		return nil, err
	}
	var machines []InventoryMachine
	if err := yaml.UnmarshalStrict(data, &machines); err != nil {
		return nil, fmt.Errorf("inventory %s: %w", path, err)
	}
	return machines, nil
}
