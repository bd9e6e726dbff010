import llmledger

llmledger.instrument()
