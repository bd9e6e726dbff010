import csv
import os
from datetime import UTC, datetime

import httpx
import requests
from fastapi import FastAPI

app = FastAPI()
ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"
HEADERS = {
    "x-api-key": os.environ["ANTHROPIC_API_KEY"],  # expect: provider-key-bypass
    "anthropic-version": "2023-06-01",
}


@app.post("/podcasts/{podcast_id}/summary")
async def summarise(podcast_id: str, transcript: str) -> dict[str, str]:
    async with httpx.AsyncClient(timeout=60) as http:
        answer = await http.post(  # expect: raw-http-provider-call
            ANTHROPIC_URL,
            headers=HEADERS,
            json={
                "model": "claude-sonnet-4-5",
                "max_tokens": 800,
                "messages": [{"role": "user", "content": transcript}],
            },
        )
    body = answer.json()
    with open("usage.csv", "a", newline="") as log:
        csv.writer(log).writerow(
            [
                datetime.now(UTC).isoformat(),
                podcast_id,
                body["usage"]["input_tokens"],
                body["usage"]["output_tokens"],
            ]
        )
    return {"summary": body["content"][0]["text"]}


def title(transcript: str) -> str:
    base = "https://api.anthropic.com"
    response = requests.post(  # llmledger: ignore - the health check's one-token probe
        f"{base}/v1/messages", json={"max_tokens": 1}, timeout=10
    )
    return str(response.status_code)


def weather() -> str:
    # Not a provider: never reported.
    return httpx.get("https://api.weather.example/today").text
