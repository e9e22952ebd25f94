package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// esDo sends a request with a JSON body (none if empty) to a node and decodes a JSON answer into out
// (nil: ignored); an answer of 300 or more is an error that quotes it.
func esDo(method, url, body string, out any) error {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := httpc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %.300s", method, url, res.Status, b)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

func esPut(url, body string) error { return esDo(http.MethodPut, url, body, nil) }
