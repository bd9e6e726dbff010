import os

import anthropic
import httpx
from google import genai
from openai import AsyncOpenAI

openai_client = AsyncOpenAI(api_key=os.environ["OPENAI_API_KEY"])
key = os.getenv("ANTHROPIC_API_KEY")
claude = anthropic.Anthropic(api_key=key)
gemini = genai.Client(api_key=os.environ.get("GEMINI_API_KEY"))


async def summarise(text: str) -> str:
    answer = await openai_client.responses.create(model="gpt-4.1-mini", input=text)
    return answer.output_text


def webhook(payload: dict[str, str]) -> int:
    return httpx.post("https://hooks.example.com/done", json=payload).status_code
