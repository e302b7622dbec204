// Package dcclients gives the controllers one datacenter API client per
// Datacenter, authenticated with its token file.
package dcclients

import (
	"os"
	"path/filepath"
	"sync"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/datacenter"
)

// ClientFor returns the datacenter client of a Datacenter.
type ClientFor func(dc *v1alpha1.Datacenter) (datacenter.Client, error)

// HTTPClients returns a ClientFor that builds one HTTP client per Datacenter
// endpoint, with the token file <credentialsDir>/<datacenter name> when it exists.
func HTTPClients(credentialsDir string, observer datacenter.Observer) ClientFor {
	var mu sync.Mutex
	clients := map[string]datacenter.Client{}
	return func(dc *v1alpha1.Datacenter) (datacenter.Client, error) {
		mu.Lock()
		defer mu.Unlock()
		key := dc.Name + "\x00" + dc.Spec.Endpoint
		if c, ok := clients[key]; ok {
			return c, nil
		}
		cfg := datacenter.Config{Endpoint: dc.Spec.Endpoint, Observer: observer}
		if credentialsDir != "" {
			if token := filepath.Join(credentialsDir, dc.Name); fileExists(token) {
				cfg.TokenFile = token
			}
		}
		c, err := datacenter.New(cfg)
		if err != nil {
			return nil, err
		}
		clients[key] = c
		return c, nil
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
