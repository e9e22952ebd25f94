package query

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCSVKeepsCarriageReturns(t *testing.T) {
	assert.Equal(t, "\"a\rb\",x,\"q\"\"\",\" lead\"\r\n", string(AppendCSVRow(nil, []string{"a\rb", "x", `q"`, " lead"})))
}
